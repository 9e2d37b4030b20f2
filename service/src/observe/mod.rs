//! SQL capture, statement logging and N+1 detection.
