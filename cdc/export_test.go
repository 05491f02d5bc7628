package cdc

import "time"

// SetTableCheckInterval lets tests see a dropped table without waiting the
// production interval.
func SetTableCheckInterval(c *Capture, d time.Duration) { c.tableCheckEvery = d }

// SetSilenceTimeout lets tests see a dead connection sooner.
func SetSilenceTimeout(c *Capture, d time.Duration) { c.silenceTimeout = d }

// ValidJSONB exposes the check that decides whether a json value goes into
// the body as it is or as a string, so tests can compare it with PostgreSQL.
func ValidJSONB(v []byte) bool { return validJSONB(v) }

// JSONBCaseInputs are the inputs of validJSONB's unit tests.
func JSONBCaseInputs() []string {
	in := make([]string, len(jsonbCases))
	for i, c := range jsonbCases {
		in[i] = c.in
	}
	return in
}
