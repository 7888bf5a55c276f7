package stepca

// SetWriteStep installs f as the hook called at each step of writing a
// station identity and returns the function that removes it.
func SetWriteStep(f func(string)) (restore func()) {
	writeStep = f
	return func() { writeStep = func(string) {} }
}
