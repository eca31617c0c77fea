package sim

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// registrationPath is the platform's single device registration endpoint.
const registrationPath = "/service/lwm2m-agent/deviceRegistration"

// errAuth stops provisioning at the first refused credential: every other
// request would be refused the same way.
var errAuth = errors.New("credentials refused")

// provision creates every device of the run through the platform's REST
// API, cfg.APIConcurrency requests at a time. An existing device (409) is
// fine. It returns the first error after all requests ended, or at once
// when the credentials are refused.
func provision(ctx context.Context, cfg Config, endpoint func(int) string, stats *counters) error {
	user, password, found := strings.Cut(cfg.User, ":")
	if !found || !strings.Contains(user, "/") {
		return errors.New("sim: api user must be tenant/user:password")
	}
	conc := cfg.APIConcurrency
	if conc <= 0 {
		conc = 16
	}
	url := strings.TrimRight(cfg.API, "/") + registrationPath
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc},
	}
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		failed   int
		wg       sync.WaitGroup
		next     = make(chan int)
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ep := endpoint(i)
				psk, err := cfg.psk(ep, cfg.Start+i)
				if err == nil {
					err = createDevice(ctx, client, url, user, password, ep, psk)
				}
				if err == nil {
					stats.provisioned.Add(1)
					continue
				}
				mu.Lock()
				failed++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if errors.Is(err, errAuth) {
					cancel()
				}
			}
		}()
	}
feed:
	for i := 0; i < cfg.Devices; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("sim: provisioning failed for %d of %d devices: %w", failed, cfg.Devices, firstErr)
	}
	return ctx.Err()
}

// createDevice posts one deviceRegistration: a NO_SEC device, or a PSK
// device whose lwm2m and bootstrap credentials are both psk.
func createDevice(ctx context.Context, client *http.Client, url, user, password, ep string, psk PSK) error {
	fields := map[string]string{"endpoint": ep, "securityMode": "NO_SEC", "name": ep}
	if psk.Identity != "" {
		key := hex.EncodeToString(psk.Key)
		fields["securityMode"] = "PSK"
		fields["lwm2m psk_id"], fields["lwm2m psk_key"] = psk.Identity, key
		fields["bootstrap psk_id"], fields["bootstrap psk_key"] = psk.Identity, key
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("create %s: %w", ep, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(user, password)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("create %s: %w", ep, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusConflict:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("create %s: %w: %s %s", ep, errAuth, resp.Status, bytes.TrimSpace(msg))
	}
	return fmt.Errorf("create %s: %s %s", ep, resp.Status, bytes.TrimSpace(msg))
}
