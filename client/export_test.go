package client

// WithoutMultiplex sends each session's requests on its own session
// stream, as against a server without Multiplex: the tests of that path.
func WithoutMultiplex() Option { return func(o *options) { o.noMultiplex = true } }
