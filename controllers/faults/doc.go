// Package faults holds fault-injection tests of the controllers: churn, a manager
// killed mid-reconcile, and a flood of failing sidecar probes. Unlike the main
// controller suite it runs no manager of its own, so each test decides when the
// operator runs and when it dies.
package faults
