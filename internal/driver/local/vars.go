package local

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shipbot/shipbot/internal/deploy"
)

// appVars is what a release's processes get besides PATH, HOME and the
// port (SPEC §7): the app's and the environment's variables, and the
// values of its secrets. Only vars and the secrets' names are ever written
// to disk (state.json); the values are read again through
// Options.Secrets when the driver restores after a restart.
type appVars struct {
	vars    map[string]string
	secrets map[string]string // by name
}

func targetVars(t deploy.Target) appVars   { return appVars{vars: t.Vars, secrets: t.Secrets} }
func previewVars(p deploy.Preview) appVars { return appVars{vars: p.Vars, secrets: p.Secrets} }

// env is vars then secrets as NAME=value (deploy.AppEnv).
func (v appVars) env() []string { return deploy.AppEnv(v.vars, v.secrets) }

// names is the secrets' names, sorted: what state.json keeps of them.
func (v appVars) names() []string { return slices.Sorted(maps.Keys(v.secrets)) }

// mask is s with every secret value replaced by deploy.Mask.
func (v appVars) mask(s string) string { return deploy.MaskSecrets(s, v.secrets) }

// maskWriter masks the secret values in what it passes on to w; Flush it
// at the end.
func (v appVars) maskWriter(w io.Writer) interface {
	io.Writer
	Flush()
} {
	return deploy.NewMaskWriter(w, v.secrets)
}

func (v appVars) equal(o appVars) bool {
	return maps.Equal(v.vars, o.vars) && maps.Equal(v.secrets, o.secrets)
}

// inherited is all of the bot's own environment a child process gets: its
// PATH, to find sh and the build tools, and its HOME, where tools keep
// their caches. Nothing else of it (the bot's WEBHOOK_SECRET, PRIVATE_KEY,
// REDIS_URL, SECRETS_KEY, AWS credentials...) ever reaches an app.
var inherited = []string{"PATH", "HOME"}

// childEnv is the environment of builds, the release phase and instances:
// PATH and HOME of the bot's own, then Options.Env, then the app's
// variables and secrets, then set (the port, for an instance). A later
// entry wins over an earlier one of the same name.
func (d *Driver) childEnv(v appVars, set ...string) []string {
	var layers [][]string
	var own []string
	for _, k := range inherited {
		if val, ok := os.LookupEnv(k); ok {
			own = append(own, k+"="+val)
		}
	}
	layers = append(layers, own, d.opts.Env, v.env(), set)
	at := map[string]int{}
	var env []string
	for _, layer := range layers {
		for _, kv := range layer {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := at[k]; ok {
				env[i] = kv
				continue
			}
			at[k] = len(env)
			env = append(env, kv)
		}
	}
	return env
}

// buildKeyFile holds the key of the build directories' names, made once
// per DataDir.
const buildKeyFile = "build.key"

// loadBuildKey reads DataDir/local/build.key, making it the first time.
func loadBuildKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, "local", buildKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		key, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(key) != 32 {
			return nil, fmt.Errorf("local driver: %s is not a build key (64 hex digits): delete it and every build will be made afresh", path)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("local driver: %w", err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := writeFileAtomic(path, []byte(hex.EncodeToString(key)+"\n")); err != nil {
		return nil, fmt.Errorf("local driver: writing %s: %w", path, err)
	}
	return key, nil
}

// varsKey names the build of a release made with v: a keyed hash of
// every variable and secret value, so that a build is reused only with the
// same variables (staging's build never runs with production's secrets)
// while its name, which deploy logs show, tells nothing of the values.
func (d *Driver) varsKey(v appVars) string {
	m := hmac.New(sha256.New, d.buildKey)
	for _, kv := range v.env() {
		m.Write([]byte(kv))
		m.Write([]byte{0})
	}
	return "vars-" + hex.EncodeToString(m.Sum(nil)[:8])
}

// restoreSecrets reads again the values of the secrets named for an
// instance brought back from state.json; env is "preview" for a preview.
func (d *Driver) restoreSecrets(ctx context.Context, k fleetKey, env string, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if k.PR > 0 {
		env = "preview"
	}
	if d.opts.Secrets == nil {
		return nil, fmt.Errorf("it needs the secret %s and the driver has no Options.Secrets to read it from; deploy the environment again", names[0])
	}
	out := make(map[string]string, len(names))
	for _, name := range names {
		val, err := d.opts.Secrets.Secret(ctx, k.Repo, env, name)
		if errors.Is(err, deploy.ErrSecretNotSet) {
			return nil, fmt.Errorf("its secret %s is no longer set; set it with `bot secrets set %s %s %s` and deploy again", name, k.Repo, env, name)
		}
		if err != nil {
			return nil, fmt.Errorf("its secret %s cannot be read (%w); fix that and deploy again", name, err)
		}
		out[name] = val
	}
	return out, nil
}
