//! The OpenLDAP schema for the Gluu attributes the cluster manager touches.
//!
//! Names follow Gluu 4.x; the OIDs are the stand-in's own, under a UUID-derived arc
//! (ITU-T X.667, `2.25.<uuid>`), so they cannot clash with anybody's registered OIDs.

pub const GLUU_SCHEMA: &str = r#"# Gluu Server stand-in schema (test-only).
# Attribute and class names follow Gluu 4.x; OIDs are private to the stand-in.
objectidentifier StandinRoot 2.25.17087833914949451989460735141670331270
objectidentifier StandinAttr StandinRoot:1
objectidentifier StandinClass StandinRoot:2

attributetype ( StandinAttr:1 NAME 'gluuHostname'
	DESC 'Public host name of the Gluu Server (the load balancer)'
	EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:2 NAME 'oxCacheConfiguration'
	DESC 'Cache configuration (JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:3 NAME 'oxIDPAuthentication'
	DESC 'Authentication LDAP servers (JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )

attributetype ( StandinAttr:4 NAME 'oxAuthConfDynamic'
	DESC 'oxAuth dynamic configuration (JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:5 NAME 'oxAuthConfStatic'
	DESC 'oxAuth static configuration (JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:6 NAME 'oxAuthConfErrors'
	DESC 'oxAuth error messages (JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:7 NAME 'oxAuthConfWebKeys'
	DESC 'oxAuth public web keys (JWKS JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:8 NAME 'oxRevision'
	DESC 'Configuration revision; oxAuth reloads when it changes'
	EQUALITY integerMatch ORDERING integerOrderingMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )

attributetype ( StandinAttr:9 NAME 'uuid'
	DESC 'Cache entry key'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:10 NAME 'iat'
	DESC 'Cache entry creation time'
	EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE )

attributetype ( StandinAttr:11 NAME 'exp'
	DESC 'Cache entry expiration time'
	EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE )

attributetype ( StandinAttr:12 NAME 'dat'
	DESC 'Cache entry data (JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:13 NAME 'del'
	DESC 'Cache entry marked for deletion'
	EQUALITY booleanMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )

attributetype ( StandinAttr:14 NAME 'oxTrustConfApplication'
	DESC 'oxTrust application configuration (JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:15 NAME 'inum'
	DESC 'Gluu internal identifier of an entry'
	EQUALITY caseIgnoreMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:16 NAME 'role'
	DESC 'A person role, released as the claim role'
	EQUALITY caseIgnoreMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )

attributetype ( StandinAttr:17 NAME 'oxAuthClientSecret'
	DESC 'Client secret'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:18 NAME 'oxAuthRedirectURI'
	DESC 'Redirect URI of a client'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )

attributetype ( StandinAttr:19 NAME 'oxAuthGrantType'
	DESC 'Grant type of a client'
	EQUALITY caseIgnoreMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )

attributetype ( StandinAttr:20 NAME 'oxAuthResponseType'
	DESC 'Response type of a client'
	EQUALITY caseIgnoreMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )

attributetype ( StandinAttr:21 NAME 'oxAuthTokenEndpointAuthMethod'
	DESC 'Token endpoint authentication method of a client'
	EQUALITY caseIgnoreMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

attributetype ( StandinAttr:22 NAME 'oxAttributes'
	DESC 'Client attributes (JSON)'
	EQUALITY caseExactMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )

objectclass ( StandinClass:1 NAME 'gluuConfiguration'
	DESC 'Gluu Server configuration'
	SUP top STRUCTURAL
	MUST ou
	MAY ( gluuHostname $ oxCacheConfiguration $ oxIDPAuthentication $ description ) )

objectclass ( StandinClass:2 NAME 'oxAuthConfiguration'
	DESC 'oxAuth configuration'
	SUP top STRUCTURAL
	MUST ou
	MAY ( oxAuthConfDynamic $ oxAuthConfStatic $ oxAuthConfErrors $ oxAuthConfWebKeys $ oxRevision ) )

objectclass ( StandinClass:3 NAME 'oxTrustConfiguration'
	DESC 'oxTrust configuration'
	SUP top STRUCTURAL
	MUST ou
	MAY ( oxTrustConfApplication $ oxRevision ) )

objectclass ( StandinClass:4 NAME 'cache'
	DESC 'Native persistence cache entry'
	SUP top STRUCTURAL
	MUST uuid
	MAY ( iat $ exp $ dat $ del ) )

objectclass ( StandinClass:5 NAME 'oxAuthClient'
	DESC 'OpenID Connect client'
	SUP top STRUCTURAL
	MUST inum
	MAY ( displayName $ oxAuthClientSecret $ oxAuthRedirectURI $ oxAuthGrantType $ oxAuthResponseType $ oxAuthTokenEndpointAuthMethod $ oxAttributes ) )

objectclass ( StandinClass:6 NAME 'gluuCustomPerson'
	DESC 'Gluu custom person attributes'
	SUP top AUXILIARY
	MAY ( inum $ role ) )
"#;
