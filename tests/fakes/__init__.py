"""Local fakes of provider APIs: real HTTP servers on 127.0.0.1, spoken to by the real clients."""
