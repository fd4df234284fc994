package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// UniqueKey returns a random channel prefix of the form "test-xxxxxxxx", so
// that tests sharing a real Redis never see each other's traffic.
func UniqueKey(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("unique key: %v", err)
	}
	return "test-" + hex.EncodeToString(b[:])
}
