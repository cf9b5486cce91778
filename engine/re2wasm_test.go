//go:build !re2_cgo

package engine

const re2CGO = false
