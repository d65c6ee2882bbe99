// Package report owns every text shipbot shows on GitHub: deployment status
// descriptions, the shipbot/ENV check run (progress line, summary, table of
// batches), the PR comment for a preview, the reply to commands, the
// shipbot/config check run for a bad configuration file, and the reasons a
// deploy waiting for its required checks fails. It is pure: snapshots in,
// strings out, no I/O and no clock, so the same snapshot renders to the same
// bytes and a caller can skip writing text that has not changed (SPEC §11).
//
// It also says the engine's reasons (Reason: why a deploy failed, waits or
// was refused, the plan's notes, the deploy log's lines), which the engine
// emits as record.Reason data and never as words, wherever they are read:
// on GitHub, on the deploy page, in the deploy record and log.
//
// One way to say a thing: each sentence is built in one function here (the
// progress line in Progress, the one-line result in headline), and the
// status description and the check-run title are the same line.
package report
