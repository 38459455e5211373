package fleetsim

import (
	"context"
	"errors"
	"sync"
)

// Fleet is many sidecars, each with its own connection and stream, as many
// pods would have.
type Fleet struct {
	Sidecars []*Sidecar
}

// StartFleet starts a sidecar per config. On error it closes those started.
func StartFleet(cfgs []Config) (*Fleet, error) {
	f := &Fleet{}
	for _, cfg := range cfgs {
		s, err := Start(cfg)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.Sidecars = append(f.Sidecars, s)
	}
	return f, nil
}

// WaitAll waits until ok holds for every sidecar (see Sidecar.WaitFor).
func (f *Fleet) WaitAll(ctx context.Context, ok func(*Sidecar, *State) bool) error {
	for _, s := range f.Sidecars {
		if err := s.WaitFor(ctx, func(st *State) bool { return ok(s, st) }); err != nil {
			return err
		}
	}
	return nil
}

// ReconnectAll reconnects every sidecar at once, to target ("" for each
// one's own), as a fleet does when its server replica goes away.
func (f *Fleet) ReconnectAll(target string) error {
	errs := make([]error, len(f.Sidecars))
	var wg sync.WaitGroup
	for i, s := range f.Sidecars {
		wg.Go(func() { errs[i] = s.Reconnect(target) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close closes every sidecar.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	for _, s := range f.Sidecars {
		wg.Go(s.Close)
	}
	wg.Wait()
}

// Counters are the fleet's totals of the sidecars' counters.
type Counters struct {
	Responses, NACKs, RejectedResends, Streams int
}

// Counters sums the sidecars' counters.
func (f *Fleet) Counters() Counters {
	var c Counters
	for _, s := range f.Sidecars {
		st := s.State()
		c.Responses += st.Responses
		c.NACKs += st.NACKs
		c.RejectedResends += st.RejectedResends
		c.Streams += st.Streams
	}
	return c
}
