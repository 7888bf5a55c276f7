package revocation

// SetBeforeCRLLock replaces, until the returned function is called, what
// CRL calls as it waits to publish (tests).
func SetBeforeCRLLock(f func()) (restore func()) {
	old := beforeCRLLock
	beforeCRLLock = f
	return func() { beforeCRLLock = old }
}

// Lock holds the publisher's lock until the returned function is called
// (tests: requests queue behind it).
func (p *Publisher) Lock() (unlock func()) {
	p.mu.Lock()
	return p.mu.Unlock
}
