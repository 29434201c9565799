package server_test

import "syscall"

// smallSocket makes a client socket take little before its writer blocks:
// a 4 KiB receive buffer and 536-byte segments, set before it connects
// (loopback's defaults let the sender queue megabytes).
func smallSocket(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536)
	})
}
