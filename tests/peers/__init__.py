"""Real SIP peers (SIPp, PJSUA2, pyVoIP, Linphone) driven by the acceptance tests."""
