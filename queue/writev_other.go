//go:build !linux

package queue

import "os"

// iovMax is what the tests take for the limit on one write of buffers.
const iovMax = 1024

// writeAt writes bufs to f one after the other from offset off.
func writeAt(f *os.File, bufs [][]byte, off int64) error {
	for _, b := range bufs {
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}
