// Package testkit is the test infrastructure of redisadapter, written once
// for the root package, emitter/, examples/ and interop/.
//
// It provides:
//
//   - waits that poll a condition under one deadline (WaitFor, WaitEvents);
//   - goroutine-leak checks around a test (VerifyNoLeaks);
//   - free loopback ports and unique channel prefixes (FreePort, UniqueKey);
//   - the Redis a test runs against: embedded miniredis or the server named
//     by REDIS_URL (NewRedis), a private redis-server process the test may
//     kill, restart or freeze (StartRedis), a Redis Cluster with slot
//     migration (StartRedisCluster), a Sentinel setup (StartSentinel) and a
//     TLS-only server with its test PKI (StartTLSRedis);
//   - fault injection on loopback: a TCP proxy that freezes, thaws and cuts
//     connections (NewProxy), a listener that never answers
//     (SilentListener) and an address whose TCP connect never completes
//     (HangingDialAddr, HangingDialer);
//   - the multi-instance fixture: n Socket.IO servers on one Redis
//     deployment, their adapters built by an injected Mode (NewCluster), with
//     real clients (the sioclient sub-package) and fences.
//
// The package never imports the root package, whose tests import it. Every
// helper takes a testing.TB, marks itself as a helper, fails the test with a
// description of what it waited for, and releases what it started at the
// end of the test (processes, connections, goroutines).
//
// Environment: REDIS_URL selects a real Redis for NewRedis and
// EmbeddedOrURLEnv. Helpers that need the redis-server or redis-cli binaries
// skip the test when they are missing, except under CI=true, where they fail
// it.
package testkit
