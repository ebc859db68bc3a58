// The db role checks the ingest role's password against PostgreSQL's own SCRAM
// verifier, so that a second provision neither resets nor reveals it. The fixture is
// what PostgreSQL 15 stored for CREATE ROLE ... PASSWORD 'pencil'.
import t from 'tap'
import { scramMatches } from '../../provision/roles/db.js'

const verifier =
  'SCRAM-SHA-256$4096:Q0vWM/ykJPxKO86uvoggoA==$eYqDjCTYbUEcFy596P8iRDeV3FbgFTHJ68/iHx4sPOw=:/8r+U0N69TAOaEBG1CKggsr6m6FYOI8DE1iYkbOoS3k='

t.test("the right password matches PostgreSQL's verifier; others do not", async (t) => {
  t.equal(scramMatches(verifier, 'pencil'), true)
  t.equal(scramMatches(`${verifier}\n`, 'pencil'), true, 'psql output with its newline')
  t.equal(scramMatches(verifier, 'pencil2'), false)
  t.equal(scramMatches(verifier, ''), false)
  t.equal(
    scramMatches('md5c6ba8b8e4c2e5e25ecf7b5d3a0d4c9f1', 'pencil'),
    false,
    'an md5 hash is not a SCRAM verifier: reset',
  )
  t.equal(scramMatches('', 'pencil'), false, 'no role yet: create it')
})
