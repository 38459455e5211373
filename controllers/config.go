package controllers

import "github.com/envoymesh/envoymesh-operator/internal/envoyconfig"

// sidecarFiles builds and renders a sidecar's ConfigMap content.
func sidecarFiles(svc envoyconfig.Service, opts envoyconfig.Options) (*envoyconfig.Output, error) {
	res, err := envoyconfig.BuildSidecar(svc, opts)
	if err != nil {
		return nil, err
	}
	return envoyconfig.Render(res)
}

// gatewayFiles builds and renders a gateway's ConfigMap content.
func gatewayFiles(gw envoyconfig.Gateway, opts envoyconfig.Options) (*envoyconfig.Output, error) {
	res, err := envoyconfig.BuildGateway(gw, opts)
	if err != nil {
		return nil, err
	}
	return envoyconfig.Render(res)
}
