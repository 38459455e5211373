package envoyadmin

import (
	"io"
	"strings"
	"testing"
)

func BenchmarkParse(b *testing.B) {
	parsers := []struct {
		file  string
		parse func(io.Reader) error
	}{
		{"server_info.json", func(r io.Reader) error { _, err := ParseServerInfo(r); return err }},
		{"server_info_docs_sample.json", func(r io.Reader) error { _, err := ParseServerInfo(r); return err }},
		{"stats.json", func(r io.Reader) error { _, err := ParseStats(r); return err }},
		{"stats_filtered.json", func(r io.Reader) error { _, err := ParseStats(r); return err }},
		{"clusters.json", func(r io.Reader) error { _, err := ParseClusters(r); return err }},
		{"clusters_streaming_request_test.json", func(r io.Reader) error { _, err := ParseClusters(r); return err }},
		{"certs.json", func(r io.Reader) error { _, err := ParseCerts(r); return err }},
	}
	for _, p := range parsers {
		body := fixture(b, p.file)
		b.Run(p.file, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := p.parse(strings.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
