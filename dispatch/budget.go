package dispatch

import "sync/atomic"

// budget bounds the claimed deliveries a process holds in memory: queued
// for the senders, being attempted, or waiting for their outcome to be
// written. The store and the producer reserve from it before they claim;
// the completer gives back once the outcome is recorded.
type budget struct {
	maxCount, maxBytes int64
	count, bytes       atomic.Int64
}

// reserve takes up to n deliveries of capacity and returns how many it got:
// none while the bodies held reach maxBytes (a claim may overshoot it by
// one batch).
func (b *budget) reserve(n int64) int64 {
	if b.bytes.Load() >= b.maxBytes {
		return 0
	}
	for {
		cur := b.count.Load()
		free := min(b.maxCount-cur, n)
		if free <= 0 {
			return 0
		}
		if b.count.CompareAndSwap(cur, cur+free) {
			return free
		}
	}
}

// settle turns a reservation of reserved into got claimed deliveries
// holding bytes of bodies.
func (b *budget) settle(reserved, got, bytes int64) {
	b.count.Add(got - reserved)
	b.bytes.Add(bytes)
}

// release gives back count deliveries holding bytes.
func (b *budget) release(count, bytes int64) {
	b.count.Add(-count)
	b.bytes.Add(-bytes)
}
