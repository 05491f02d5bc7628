package cdc

import "time"

// SetTableCheckInterval lets tests see a dropped table without waiting the
// production interval.
func SetTableCheckInterval(c *Capture, d time.Duration) { c.tableCheckEvery = d }

// SetSilenceTimeout lets tests see a dead connection sooner.
func SetSilenceTimeout(c *Capture, d time.Duration) { c.silenceTimeout = d }
