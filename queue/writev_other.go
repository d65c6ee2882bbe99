//go:build !linux

package queue

import "os"

// iovMax is what the tests take for the limit on one write of buffers.
const iovMax = 1024

// writeAll writes bufs to f one after the other.
func writeAll(f *os.File, bufs [][]byte) error {
	for _, b := range bufs {
		if _, err := f.Write(b); err != nil {
			return err
		}
	}
	return nil
}
