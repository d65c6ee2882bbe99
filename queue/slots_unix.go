//go:build unix

package queue

import "syscall"

// allocSlots returns n zeroed bytes mapped outside the Go heap, or from the
// heap if the mapping fails.
func allocSlots(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n)
	}
	return b
}

// freeSlots unmaps what allocSlots mapped; heap memory is left to the
// collector.
func freeSlots(b []byte) {
	_ = syscall.Munmap(b) // EINVAL for heap memory, which is not mapped
}
