//! A provider simulator speaking the OpenAI, Anthropic and Gemini wire APIs, with faults.
