// Package e2e holds walhook's end-to-end tests: they build the real binary,
// run it against throwaway PostgreSQL clusters and HTTP receivers on
// 127.0.0.1, and hurt it the way production does (SIGKILL, server
// restarts, failing receivers, huge transactions, bad configuration).
package e2e
