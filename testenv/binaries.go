package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoPostgres is returned (wrapped) by StartCluster when no directory holding
// the PostgreSQL server binaries (initdb, postgres, pg_ctl) can be found.
var ErrNoPostgres = errors.New("no PostgreSQL server binaries (initdb, postgres, pg_ctl) found on PATH, via pg_config --bindir or in /usr/lib/postgresql/*/bin: install PostgreSQL server binaries, e.g. apt-get install postgresql")

// serverBinaries are the programs a cluster needs; a directory counts only if
// it holds all of them, because Debian puts wrappers for some in /usr/bin.
var serverBinaries = []string{"initdb", "postgres", "pg_ctl"}

// findBinDir returns the first directory that holds all server binaries, trying
// in order: explicit (if set), the directory of initdb on PATH with symlinks
// resolved, pg_config --bindir, and the highest /usr/lib/postgresql/*/bin.
func findBinDir(explicit string) (string, error) {
	if explicit != "" {
		if !hasServerBinaries(explicit) {
			return "", fmt.Errorf("use PostgreSQL binaries in %s: %w", explicit, ErrNoPostgres)
		}
		return explicit, nil
	}
	var tried []string
	for _, candidate := range binDirCandidates() {
		tried = append(tried, candidate)
		if hasServerBinaries(candidate) {
			return candidate, nil
		}
	}
	if len(tried) == 0 {
		return "", ErrNoPostgres
	}
	return "", fmt.Errorf("look for PostgreSQL binaries (tried %s): %w", strings.Join(tried, ", "), ErrNoPostgres)
}

func binDirCandidates() []string {
	var out []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			p = resolved
		}
		out = append(out, filepath.Dir(p))
	}
	if p, err := exec.LookPath("pg_config"); err == nil {
		if b, err := exec.Command(p, "--bindir").Output(); err == nil {
			if dir := strings.TrimSpace(string(b)); dir != "" {
				out = append(out, dir)
			}
		}
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versions, func(i, j int) bool {
		return versionOf(versions[i]) > versionOf(versions[j])
	})
	return append(out, versions...)
}

// versionOf reads the major version out of /usr/lib/postgresql/<v>/bin, so
// that 15 sorts above 9.6 (a string sort would not).
func versionOf(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

func hasServerBinaries(dir string) bool {
	for _, name := range serverBinaries {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}
