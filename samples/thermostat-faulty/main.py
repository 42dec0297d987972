"""Thermostat, faulty build: a sample for crash reporting, restarts and rollback.

Same component as ``samples/thermostat``, so it installs as an update of it. It reads the
sensor once, then dereferences a null pointer, as a buggy native driver would: the process
dies of SIGSEGV, the runtime records an AppCrash event and restarts it with back-off.
"""

from __future__ import annotations

import ctypes

from applibs import adc

sample = adc.read("$TEMPERATURE_ADC", 0)
print(f"sensor sample {sample}; now calling the broken driver", flush=True)
ctypes.string_at(0)
