package queue

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// iovMax is Linux's limit on the buffers of one writev.
const iovMax = 1024

// writeAll writes bufs to f one after the other with as few writev calls
// as it takes, so a group of journal records needs no copy into one buffer.
func writeAll(f *os.File, bufs [][]byte) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		if len(bufs) == 0 {
			return nil
		}
		var n int
		var werr error
		if err := rc.Write(func(fd uintptr) bool {
			n, werr = unix.Writev(int(fd), bufs[:min(len(bufs), iovMax)])
			return werr != unix.EAGAIN
		}); err != nil {
			return err
		}
		switch {
		case werr == unix.EINTR:
			continue
		case werr != nil:
			return &os.PathError{Op: "writev", Path: f.Name(), Err: werr}
		case n == 0:
			return &os.PathError{Op: "writev", Path: f.Name(), Err: io.ErrShortWrite}
		}
		// Skip what was written: whole buffers, then part of the next.
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
}
