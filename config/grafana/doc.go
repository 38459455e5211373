// Package grafana holds no code: its test checks that the Grafana dashboard in
// this directory queries only metrics a real Envoy exports.
package grafana
