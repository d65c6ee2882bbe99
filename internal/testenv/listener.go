package testenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ListensOn reports whether process pid has a socket listening on the
// loopback TCP port. A server a test starts on a port FreePort chose can
// lose the port to another test's server started in the same instant (the
// test binaries run in parallel); its readiness check would then be answered
// by the other server, and two tests would share one moto or one Redis.
// Checking the owner of the listening socket closes that gap. Linux only:
// it reads /proc, and says yes where /proc is missing.
func ListensOn(pid, port int) bool {
	inodes, ok := listeningInodes(port)
	if !ok {
		return true
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			return true
		}
	}
	return false
}

// listeningInodes is the inodes of the sockets in state LISTEN on port, from
// /proc/net/tcp and tcp6; ok is false when /proc cannot be read.
func listeningInodes(port int) (inodes map[string]bool, ok bool) {
	inodes = map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		ok = true
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			p, err := strconv.ParseInt(fields[1][i+1:], 16, 32)
			if err == nil && int(p) == port {
				inodes[fields[9]] = true
			}
		}
		f.Close()
	}
	return inodes, ok
}
