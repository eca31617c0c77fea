//go:build !unix

package main

import "time"

// processCPU cannot be read here: idle collections are off.
func processCPU() (time.Duration, bool) { return 0, false }
