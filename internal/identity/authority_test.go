package identity

import (
	"sync"
	"testing"
	"time"
)

func TestAuthority(t *testing.T) {
	a, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	id := func(ca *CA) string {
		if ca == nil {
			return "nil"
		}
		return map[string]string{a.ID(): "A", b.ID(): "B"}[ca.ID()]
	}
	check := func(t *testing.T, auth *Authority, at time.Time, signing, current string) {
		t.Helper()
		if got := id(auth.ForSigning(at)); got != signing {
			t.Errorf("ForSigning(%v) = %s, want %s", at.Sub(now), got, signing)
		}
		if got := id(auth.Current()); got != current {
			t.Errorf("Current() = %s, want %s", got, current)
		}
	}

	t.Run("empty", func(t *testing.T) {
		var auth Authority
		check(t, &auth, now, "nil", "nil")
		auth.Set(nil, now)
		check(t, &auth, now, "nil", "nil")
	})

	t.Run("first CA signs at once", func(t *testing.T) {
		// There is nothing else to sign with; waiting would only fail requests.
		var auth Authority
		auth.Set(a, now.Add(BundlePropagation))
		check(t, &auth, now, "A", "A")
	})

	t.Run("switch waits for propagation", func(t *testing.T) {
		var auth Authority
		auth.Set(a, now)
		usable := now.Add(BundlePropagation)
		auth.Set(b, usable)
		check(t, &auth, now, "A", "B")
		check(t, &auth, usable.Add(-time.Nanosecond), "A", "B")
		check(t, &auth, usable, "B", "B")
		check(t, &auth, usable.Add(time.Hour), "B", "B")
	})

	t.Run("same CA again moves usableFrom only earlier", func(t *testing.T) {
		var auth Authority
		auth.Set(a, now)
		usable := now.Add(BundlePropagation)
		auth.Set(b, usable)
		auth.Set(b, usable.Add(time.Hour)) // later: ignored
		check(t, &auth, usable, "B", "B")
		// The same certificate read back from its Secret is the same CA.
		data, err := b.SecretData()
		if err != nil {
			t.Fatal(err)
		}
		b2, err := ParseCA(data)
		if err != nil {
			t.Fatal(err)
		}
		auth.Set(b2, now.Add(time.Minute)) // earlier: taken
		check(t, &auth, now.Add(time.Minute-time.Nanosecond), "A", "B")
		check(t, &auth, now.Add(time.Minute), "B", "B")
		if auth.Current() != b2 {
			t.Errorf("Current is not the CA set last")
		}
	})

	t.Run("rollback to a CA still trusted", func(t *testing.T) {
		var auth Authority
		auth.Set(a, now)
		auth.Set(b, now.Add(BundlePropagation))
		// A's bundle never went away, so it is usable from its old time.
		auth.Set(a, now.Add(-time.Hour))
		check(t, &auth, now, "A", "A")
	})

	t.Run("concurrent use", func(t *testing.T) {
		var auth Authority
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for j := range 100 {
					if (i+j)%2 == 0 {
						auth.Set(a, now)
					} else {
						auth.Set(b, now.Add(time.Duration(j)*time.Second))
					}
					_ = auth.ForSigning(now)
					_ = auth.Current()
				}
			})
		}
		wg.Wait()
		if auth.Current() == nil || auth.ForSigning(now.Add(time.Hour)) == nil {
			t.Errorf("no CA after concurrent sets")
		}
	})
}
