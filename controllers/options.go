package controllers

import "sigs.k8s.io/controller-runtime/pkg/controller"

func controllerOptions(maxConcurrent int) controller.Options {
	return controller.Options{MaxConcurrentReconciles: maxConcurrent}
}
