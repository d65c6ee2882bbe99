package testenv

import (
	"net"
	"os"
	"testing"
)

func TestListensOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if !ListensOn(os.Getpid(), port) {
		t.Errorf("ListensOn(self, %d) = false for our own listener", port)
	}
	if ListensOn(1, port) {
		t.Errorf("ListensOn(1, %d) = true for a listener of ours", port)
	}
	free := FreePort(t)
	if ListensOn(os.Getpid(), free) {
		t.Errorf("ListensOn(self, %d) = true for a closed port", free)
	}
}
