// npm run lint: typescript-eslint with its type-checked rules, and the layers the code
// keeps (docs/architecture.md): services <- provision <- scripts <- test, each
// importing only the ones before it; and only the plan (provision/plan.ts) reads the
// topology: everyone else gets addresses, services and providers from the plan.
import tseslint from 'typescript-eslint'

const LAYERS = 'the layers are services <- provision <- scripts <- test (docs/architecture.md)'
const topologyRule = {
  group: ['**/topology.js', './topology.js'],
  message:
    'only provision/plan.ts reads the topology: import loadPlan/planOf and the types from provision/plan.js (docs/architecture.md)',
}
const restrict = (files, name, forbidden, { topology = true } = {}) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          ...forbidden.map((f) => ({ group: [`**/${f}/**`], message: `${name}/ does not import ${f}/: ${LAYERS}` })),
          ...(topology ? [topologyRule] : []),
        ],
      },
    ],
  },
})
const layer = (name, forbidden) => restrict([`${name}/**/*.ts`], name, forbidden)

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      '.stryker-tmp/**',
      'reports/**',
      '.lab/**',
      '.vagrant/**',
      'tap-snapshots/**',
      '**/*.mjs',
      '**/*.cjs',
    ],
  },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // A rest sibling leaves a field out on purpose; _name marks a value not used.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { ignoreRestSiblings: true, argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      // tap's t.test() returns a promise tap itself awaits (subtests run in order).
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', name: ['test', 'skip', 'todo', 'only'], package: '@tapjs/test' }],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // A tap callback is async by convention, awaiting or not.
      '@typescript-eslint/require-await': 'off',
      // Tests build malformed input on purpose (a topology with a field of the wrong
      // type, a reading with an extra one): raw objects are untyped there, as in YAML.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
  layer('services', ['provision', 'scripts', 'test']),
  layer('provision', ['scripts', 'test']),
  layer('scripts', ['test']),
  layer('test', []),
  // The plan resolves the topology; the provider choice needs its roles; the
  // validator's own tests call it directly, refusal by refusal.
  restrict(['provision/plan.ts', 'provision/providers.ts'], 'provision', ['scripts', 'test'], { topology: false }),
  restrict(['test/unit/topology.ts', 'test/unit/topology-refusals.ts'], 'test', [], { topology: false }),
)
