package pgnet

import (
	"fmt"
	"strings"
	"syscall"
	"time"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from linux/tcp.h, the same on every
// architecture; the syscall package lacks it on some, amd64 among them.
const tcpUserTimeout = 0x12

// userTimeoutControl sets TCP_USER_TIMEOUT on a TCP socket before it
// connects, so that it covers the handshake too.
func userTimeoutControl(d time.Duration) func(network, address string, c syscall.RawConn) error {
	ms := int(d.Milliseconds())
	return func(network, address string, c syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, ms)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set tcp_user_timeout: %w", serr)
		}
		return nil
	}
}
