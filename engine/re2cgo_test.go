//go:build re2_cgo

package engine

// re2CGO is set when go-re2 wraps the system's RE2 through cgo instead of
// its WebAssembly build.
const re2CGO = true
