package handlers

import (
	"context"

	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/queue"
)

// Commands are the dependencies of PR comment commands.
type Commands struct{}

func (deps Deps) issueComment(ctx context.Context, job queue.Job) error {
	var p struct {
		Issue struct {
			Number      int       `json:"number"`
			PullRequest *struct{} `json:"pull_request"`
		} `json:"issue"`
		Comment struct {
			ID   int64 `json:"id"`
			User struct {
				Login string `json:"login"`
				Type  string `json:"type"`
			} `json:"user"`
		} `json:"comment"`
	}
	if err := decode(job, &p); err != nil {
		return err
	}
	logctx.From(ctx).Info("comment received", "issue", p.Issue.Number, "on_pr", p.Issue.PullRequest != nil,
		"comment", p.Comment.ID, "author", p.Comment.User.Login, "author_type", p.Comment.User.Type)
	return nil
}
