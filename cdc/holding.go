package cdc

// Holding is true while this process streams from the slot: it is the
// capturing member of a high-availability pair. A standby waiting for the
// slot, or a process between sessions, is not holding it. Safe to call from
// any goroutine.
func (c *Capture) Holding() bool { return c.holding.Load() }
