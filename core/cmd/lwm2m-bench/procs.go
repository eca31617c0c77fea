package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// child is a running child process.
type child struct {
	cmd  *exec.Cmd
	name string
}

func startChild(ctx context.Context, name string, args ...string) (*child, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &child{cmd: cmd, name: name}, nil
}

func (c *child) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// waitHTTP waits until url answers.
func waitHTTP(url string) error {
	for i := 0; i < 200; i++ {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up", url)
}

// waitUDP gives a UDP server a moment to bind; UDP has no handshake.
func waitUDP(addr string) {
	for i := 0; i < 100; i++ {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return // taken: the server is up
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
}

// workers runs the devices in as many worker processes as needed, each on
// its own loopback address, and collects their results. onAllRegistered,
// if set, is called once every device registered, with the workers'
// process ids; the workers then keep running until ctx ends (memory) or
// their -duration passes. A device whose socket or first Register failed
// counts as settled, so that one failure does not stall the run; the
// callback gets how many registered.
func runWorkers(ctx context.Context, c *common, server string, extra []string, onAllRegistered func(workers []int, registered int64)) ([]result, error) {
	n := (c.devices + c.perProc - 1) / c.perProc
	var (
		mu       sync.Mutex
		results  []result
		progress = make([]int64, n)
		failed   = make([]int64, n)
		fired    bool
		pids     []int
		wg       sync.WaitGroup
		firstErr error
	)
	self, _ := os.Executable()
	for i := 0; i < n; i++ {
		count := min(c.perProc, c.devices-i*c.perProc)
		args := append([]string{"worker", "-server", server, "-devices", fmt.Sprint(count),
			"-start", fmt.Sprint(i * c.perProc), "-local-ip", fmt.Sprintf("127.0.0.%d", i+1)}, extra...)
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 60 * time.Second
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		pids = append(pids, cmd.Process.Pid)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			var last []byte
			for sc.Scan() {
				line := sc.Bytes()
				var p struct {
					Progress *int64 `json:"progress"`
					Failed   int64  `json:"failed"`
				}
				if json.Unmarshal(line, &p) == nil && p.Progress != nil {
					mu.Lock()
					progress[i], failed[i] = *p.Progress, p.Failed
					var registered, settled int64
					for j := range progress {
						registered += progress[j]
						settled += progress[j] + failed[j]
					}
					if settled >= int64(c.devices) && !fired && onAllRegistered != nil {
						fired = true
						go onAllRegistered(pids, registered)
					}
					mu.Unlock()
					continue
				}
				last = bytes.Clone(line)
			}
			err := cmd.Wait()
			mu.Lock()
			defer mu.Unlock()
			if last == nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("worker %d: %w (%v)", i, errNoResult, err)
				}
				return
			}
			r, derr := decodeResult(last)
			if derr != nil && firstErr == nil {
				firstErr = derr
			}
			results = append(results, r)
		}(i)
	}
	wg.Wait()
	return results, firstErr
}

// provision creates the devices in lwm2md through the REST API.
func provision(ctx context.Context, api, user string, from, count int, prefix string) error {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	tenantUser, pass, _ := strings.Cut(user, ":")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := from; i < from+count; i++ {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			ep := fmt.Sprintf("%s%d", prefix, i)
			body, _ := json.Marshal(map[string]string{"endpoint": ep, "securityMode": "NO_SEC"})
			req, _ := http.NewRequestWithContext(ctx, "POST", api+"/service/lwm2m-agent/deviceRegistration", bytes.NewReader(body))
			req.SetBasicAuth(tenantUser, pass)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 201 && resp.StatusCode != 409 {
					err = fmt.Errorf("register %s: HTTP %d", ep, resp.StatusCode)
				}
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	return firstErr
}

// cpuTime is the CPU time (user and system) process pid has used so far,
// from /proc; zero where /proc is not available.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// the command name (field 2) may hold spaces: count from its ')'
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture Go supports.
const clockTicks = 100
