"""ManageSieve (RFC 5804): Sieve scripts managed over port 4190."""
