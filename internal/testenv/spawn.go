package testenv

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// StartChild starts cmd so that it dies with the test process
// (Pdeathsig SIGKILL), from one OS thread that lives as long as the test
// process does.
//
// Pdeathsig fires when the thread that started the child exits, not the
// process. A goroutine that ends while locked to its thread (the local
// driver's spawner does, on Close) takes that thread down with it; a
// redis-server started earlier from the same thread by another test's
// goroutine then dies mid-test. Starting every child from this one locked
// thread, which never exits, rules that out.
func StartChild(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawns {
				r.err <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	spawns <- spawnRequest{cmd: cmd, err: errc}
	return <-errc
}

type spawnRequest struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce sync.Once
	spawns    chan spawnRequest
)
