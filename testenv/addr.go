package testenv

import "fmt"

// FreeAddr returns a 127.0.0.1 address with a port nobody listens on, for
// a server a test starts in another process (the walhook binary's admin
// server, walhook listen). Another process may take the port first; the
// test then fails to listen, which is rare enough to rerun.
func FreeAddr(t TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}
