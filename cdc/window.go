package cdc

import (
	"time"

	"github.com/jackc/pglogrepl"
)

// windowTimeout is how long a chunk's window stays open without its HIGH
// mark. A backfill process that died between LOW and HIGH would otherwise
// hold the slot's position, and with it the WAL, for ever; a HIGH that
// comes later is ignored, and the backfill process, not seeing its chunk
// recorded, reads it again.
const windowTimeout = 2 * time.Minute

// watermarks is the capture's side of the backfills: the chunks between
// their LOW and HIGH marks, and the chunk accepted in the transaction being
// decoded. It lives as long as a stream session: a new session replays the
// stream from before every open window, since the position is held there.
type watermarks struct {
	open    map[string]*window // by backfill id
	pending *acceptedChunk
}

// window is one chunk between its LOW and HIGH marks.
type window struct {
	chunk int64
	token string
	// low is the LOW transaction's commit LSN: the position is held there
	// while the window is open, so that after a crash the stream replays
	// the LOW mark and every live change after it.
	low    pglogrepl.LSN
	opened time.Time
	// live holds the users (Event.UserID) that live events changed since LOW.
	live map[string]struct{}
}

// acceptedChunk is a chunk whose events were emitted; it is recorded done at
// its transaction's commit, after its events are written.
type acceptedChunk struct {
	id         string
	chunk      int64
	read, sent int64
	lastKey    []string
	// at is the chunk's LOW position, where the position stays held until
	// the chunk is recorded: a session that fails before then replays the
	// whole window and accepts the chunk again.
	at pglogrepl.LSN
}

// low opens the window of chunk n of backfill id. A LOW mark seen again for
// the same chunk (a backfill process that restarted, or a second try) keeps
// the earlier window: a wider window drops more rows, and a dropped row
// always has a live event at least as new.
func (w *watermarks) low(id, token string, n int64, lsn pglogrepl.LSN, now time.Time) {
	if cur := w.open[id]; cur != nil && cur.chunk == n {
		return
	}
	if w.open == nil {
		w.open = make(map[string]*window)
	}
	w.open[id] = &window{chunk: n, token: token, low: lsn, opened: now, live: make(map[string]struct{})}
}

// noteLive records a live event of user while windows are open.
func (w *watermarks) noteLive(user string) {
	for _, win := range w.open {
		win.live[user] = struct{}{}
	}
}

// high closes and returns the window of chunk n of backfill id; ok is false
// if that chunk has no open window (its LOW was before the position this
// session started from, or it timed out).
func (w *watermarks) high(id string, n int64) (win *window, ok bool) {
	win = w.open[id]
	if win == nil || win.chunk != n {
		return nil, false
	}
	delete(w.open, id)
	return win, true
}

// cancel forgets the window of backfill id, if token is the backfill's.
func (w *watermarks) cancel(id, token string) {
	if win := w.open[id]; win != nil && win.token == token {
		delete(w.open, id)
	}
}

// expire closes the windows open longer than windowTimeout and returns the
// ids of those it closed.
func (w *watermarks) expire(now time.Time) []string {
	var ids []string
	for id, win := range w.open {
		if now.Sub(win.opened) > windowTimeout {
			delete(w.open, id)
			ids = append(ids, id)
		}
	}
	return ids
}

// hold is the highest position that may be made durable (0: no limit): not
// past an open window's LOW, nor past a chunk not recorded yet.
func (w *watermarks) hold() pglogrepl.LSN {
	var h pglogrepl.LSN
	lower := func(lsn pglogrepl.LSN) {
		if h == 0 || lsn < h {
			h = lsn
		}
	}
	for _, win := range w.open {
		lower(win.low)
	}
	if w.pending != nil {
		lower(w.pending.at)
	}
	return h
}
