package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// sidecarProcess is `walhook run` as a child process of the bench, the way
// users run it, so that its memory can be read apart from the bench's own.
type sidecarProcess struct {
	cmd    *exec.Cmd
	logDir string
	done   chan struct{} // closed when the process has exited
	err    error
}

// benchEndpoint is one endpoint of the generated configuration.
type benchEndpoint struct{ name, url string }

// startSidecar writes a configuration for db and starts `walhook run` on it;
// it returns once the sidecar streams from its slot.
func (b *bench) startSidecar(ctx context.Context, db *benchDB, endpoints []benchEndpoint, backoff string) error {
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "database:\n  url: %q\n  slot: %s\nsource:\n  table: public.users\nendpoints:\n", db.dsn, db.name)
	for _, e := range endpoints {
		fmt.Fprintf(&cfg, "  - name: %s\n    url: %s\n    secrets: [%q]\n", e.name, e.url, b.secret)
	}
	fmt.Fprintf(&cfg, "delivery:\n  concurrency: %d\n  backoff: %s\n", b.opts.concurrency, backoff)
	if b.opts.retention > 0 {
		fmt.Fprintf(&cfg, "  retention: %s\n", b.opts.retention)
	}
	path := filepath.Join(b.dir, db.name+".yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(b.dir, db.name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(b.exe, "run", "-config", path, "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start the sidecar: %w", err)
	}
	p := &sidecarProcess{cmd: cmd, logDir: logFile.Name(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	db.side = p
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return waitUntil(wctx, "the sidecar to stream from its slot", p.alive, func(ctx context.Context) (bool, error) {
		var active bool
		err := db.conn.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", db.name).Scan(&active)
		if err == pgx.ErrNoRows {
			return false, nil
		}
		return active, err
	})
}

// alive is nil while the sidecar runs, and says how it ended otherwise,
// with the end of its log.
func (p *sidecarProcess) alive() error {
	select {
	case <-p.done:
		tail, _ := os.ReadFile(p.logDir)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("%w (%v); its log ends:\n%s", errSidecarExited, p.err, tail)
	default:
		return nil
	}
}

// stop ends the sidecar with SIGTERM, as an orchestrator does, and waits.
func (p *sidecarProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// peakRSS is the sidecar's peak resident memory so far (VmHWM), in MB.
func (p *sidecarProcess) peakRSS() (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

// waitCaptured waits until the slot has confirmed lsn: every event up to it
// is durably in the side schema.
func (b *bench) waitCaptured(ctx context.Context, db *benchDB, lsn pglogrepl.LSN) (time.Time, error) {
	err := waitUntil(ctx, "the slot to confirm "+lsn.String(), db.side.alive, func(ctx context.Context) (bool, error) {
		var confirmed *string // null while the slot is still being created
		if err := db.conn.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", db.name).Scan(&confirmed); err != nil || confirmed == nil {
			return false, err
		}
		got, err := pglogrepl.ParseLSN(*confirmed)
		return err == nil && got >= lsn, err
	})
	return time.Now(), err
}
