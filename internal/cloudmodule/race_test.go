//go:build race

package cloudmodule

func init() { raceEnabled = true }
