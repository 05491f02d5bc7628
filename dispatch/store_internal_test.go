package dispatch

import (
	"testing"
	"time"
)

// TestStoppedDoesNotWaitForTheStoreLock: at shutdown a Write can hold the
// store's lock while it waits for the completer to take an adopted
// outcome, and stop waits for that Write. The completer asks stopped()
// meanwhile. If stopped() took the lock, it would queue behind stop, and
// the three would wait for each other for good.
func TestStoppedDoesNotWaitForTheStoreLock(t *testing.T) {
	s := &store{}
	s.start()
	s.mu.RLock() // the Write under way
	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	for !s.closing.Load() {
		time.Sleep(time.Millisecond)
	}
	// stop has set closing and now waits for the Write's lock. (Were it
	// slower than this, the test could pass with a stopped() that takes
	// the lock, but never fail with one that does not.)
	time.Sleep(50 * time.Millisecond)

	answer := make(chan bool, 1)
	go func() { answer <- s.stopped() }()
	select {
	case got := <-answer:
		if !got {
			t.Error("stopped() = false after stop began")
		}
	case <-time.After(5 * time.Second):
		t.Error("stopped() waited for the lock that a Write holds")
	}

	s.mu.RUnlock() // the Write ends
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return once the Write ended")
	}
	if s.accepting {
		t.Error("the store still accepts after stop")
	}
}
