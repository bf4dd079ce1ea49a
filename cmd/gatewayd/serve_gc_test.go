package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// The server's collector target is serveGCPercent unless the operator set GOGC, which then stands.
func TestServeGCPercentYieldsToGOGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	garbageCollection()
	if got := debug.SetGCPercent(100); got != serveGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, serveGCPercent)
	}

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // what the runtime read from GOGC at start
	garbageCollection()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Fatalf("GOGC=150: GC percent %d, want the operator's 150", got)
	}
}
