package testenv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// tempPattern names the directories StartCluster creates in os.TempDir().
const tempPattern = "walhook-pg-*"

// ownerFile, beside the data directory, records which process on which host
// made the cluster, so that a later StartCluster can tell an abandoned
// directory from one in use.
const ownerFile = "owner"

func writeOwner(rootDir string) error {
	host, _ := os.Hostname()
	content := fmt.Sprintf("%d\n%s\n", os.Getpid(), host)
	if err := os.WriteFile(filepath.Join(rootDir, ownerFile), []byte(content), 0o644); err != nil {
		return fmt.Errorf("record owner of %s: %w", rootDir, err)
	}
	return nil
}

// removeStale removes cluster directories whose creating process is gone
// (a test binary that panicked or was killed: its postmaster was stopped by
// the parent-death signal but nobody removed the directory). It keeps any
// directory it cannot prove abandoned: no owner file, another host (a /tmp
// shared between containers), or a postmaster still running in it.
func removeStale(log *slog.Logger) {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), tempPattern))
	if err != nil {
		return
	}
	host, _ := os.Hostname()
	for _, dir := range dirs {
		owner, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pidText, ownerHost, _ := strings.Cut(strings.TrimSpace(string(owner)), "\n")
		if ownerHost != host || !pidGone(pidText) {
			continue
		}
		postmaster, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
		if err == nil {
			first, _, _ := strings.Cut(string(postmaster), "\n")
			if !pidGone(first) {
				continue
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Debug("could not remove stale cluster directory", "dir", dir, "err", err)
			continue
		}
		log.Info("removed stale cluster directory", "dir", dir)
	}
}

// pidGone reports whether no process has the given pid; anything unclear
// (unparsable, no permission to signal) counts as alive.
func pidGone(text string) bool {
	pid, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
