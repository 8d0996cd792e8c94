//go:build race

package gaesession

func init() { raceEnabled = true }
