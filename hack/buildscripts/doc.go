// Package buildscripts holds the tests of the hack/build-*.sh scripts, which build
// the local cluster's binaries from the Go module proxy. The tests run the scripts
// with a fake go first on PATH, so they take seconds and build nothing real.
package buildscripts
