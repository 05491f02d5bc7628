package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
)

// start launches the postmaster as our child on c.port and waits until it
// accepts connections. On failure the error carries the server log written
// since this start, and no postmaster is left running.
func (c *Cluster) start(ctx context.Context) error {
	logf, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open postgres log: %w", err)
	}
	// The child gets its own copy of the descriptor; ours is not needed after
	// Start, and passing an *os.File means no goroutine copies the output.
	defer logf.Close()
	offset, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("open postgres log: %w", err)
	}

	cmd := c.command("postgres", "-D", c.dataDir, "-p", strconv.Itoa(c.port))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a Ctrl-C at the terminal reaches our process, which
	// decides when to stop the server (walhook demo shuts down walhook
	// first). The parent-death signal stops the server if we die without
	// calling Stop (a test binary killed on timeout, a panic in a test).
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres on port %d: %w", c.port, err)
	}
	pm := &postmaster{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		pm.err = cmd.Wait()
		close(pm.done)
	}()
	c.pm = pm

	if err := c.waitReady(ctx, pm); err != nil {
		c.killLocked()
		return fmt.Errorf("start postgres on port %d: %w; server log:\n%s", c.port, err, c.logSince(offset))
	}
	return nil
}

// waitReady polls until a connection succeeds, the postmaster exits, or the
// ready timeout (or ctx) ends.
func (c *Cluster) waitReady(ctx context.Context, pm *postmaster) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var lastErr error
	for {
		if pm.exited() {
			return fmt.Errorf("postgres exited during start-up (%v)", pm.err)
		}
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := c.connect(attemptCtx, "postgres")
		cancelAttempt()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for connections: %w (last attempt: %v)", ctx.Err(), lastErr)
		case <-pm.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopLocked shuts the running postmaster down with pg_ctl stop -m mode and
// waits for our child to exit. A postmaster that already exited is not an
// error: a test may have crashed it on purpose.
func (c *Cluster) stopLocked(mode string) error {
	pm := c.pm
	if pm == nil || pm.exited() {
		c.pm = nil
		return nil
	}
	pgCtl := c.command("pg_ctl", "stop", "-D", c.dataDir, "-m", mode, "-w", "-s",
		"-t", strconv.Itoa(int(stopTimeout/time.Second)))
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout+10*time.Second)
	defer cancel()
	if err := runWithContext(ctx, pgCtl); err != nil && !pm.exited() {
		return fmt.Errorf("pg_ctl stop -m %s: %w", mode, err)
	}
	select {
	case <-pm.done:
	case <-time.After(stopTimeout):
		return fmt.Errorf("postgres (pid %d) still running after pg_ctl stop -m %s", pm.pid, mode)
	}
	c.pm = nil
	return nil
}

// killLocked is the last resort: SIGKILL to the postmaster's whole process
// group, which holds its backends too.
func (c *Cluster) killLocked() error {
	pm := c.pm
	if pm == nil || pm.exited() {
		c.pm = nil
		return nil
	}
	if err := syscall.Kill(-pm.pid, syscall.SIGKILL); err != nil && !pm.exited() {
		return fmt.Errorf("kill postgres (pid %d): %w", pm.pid, err)
	}
	select {
	case <-pm.done:
	case <-time.After(stopTimeout):
		return fmt.Errorf("postgres (pid %d) still running after SIGKILL", pm.pid)
	}
	c.pm = nil
	return nil
}

// logSince returns the server log written after offset, capped to its tail.
func (c *Cluster) logSince(offset int64) string {
	const max = 4096
	f, err := os.Open(c.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if info.Size()-offset > max {
		offset = info.Size() - max
	}
	b := make([]byte, info.Size()-offset)
	n, _ := f.ReadAt(b, offset)
	return string(b[:n])
}
