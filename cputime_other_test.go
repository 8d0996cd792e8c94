//go:build !unix

package gaesession

import "time"

// cpuTime is unknown here; BenchmarkRequest then reports no cpu-ns/op.
func cpuTime() time.Duration { return 0 }
