"""Thermostat: an OpenSphere sample app.

Every few seconds it reads the virtual temperature sensor (a TMP36-like part on ADC 0,
channel 0: 0.5 V at 0 °C, 10 mV per °C), switches the heater GPIO with a little hysteresis
around the setpoint, keeps its setpoint and recent readings in mutable storage, and posts each
reading as JSON over plain HTTP to the report URL, whose host the manifest allows. While the
heater is on it defers pending updates, so a heating cycle is never cut short.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
import urllib.parse

from applibs import adc, events, gpio, networking, storage

SENSOR = "$TEMPERATURE_ADC"
SENSOR_RANGE = (-40.0, 125.0)  # the TMP36's rated range; beyond it the sensor is broken
HYSTERESIS = 0.5
DEFAULT_SETPOINT = 21.0


def read_celsius() -> float:
    sample = adc.read(SENSOR, 0)
    volts = sample * adc.reference_voltage(SENSOR) / (1 << adc.sample_bits(SENSOR))
    return round((volts - 0.5) * 100, 1)


def load_state() -> dict:
    data = storage.read()
    if not data:
        return {"setpoint": DEFAULT_SETPOINT, "history": []}
    return json.loads(data)


def save_state(state: dict) -> None:
    # Keep as much history as the storage quota allows: drop the oldest readings first.
    quota = storage.quota()
    encoded = json.dumps(state).encode()
    while len(encoded) > quota and state["history"]:
        del state["history"][0]
        encoded = json.dumps(state).encode()
    storage.write(encoded)


def report(url: urllib.parse.SplitResult, reading: dict) -> str:
    port = url.port or 80
    connection = http.client.HTTPConnection(url.hostname, port, timeout=5)
    connection.sock = networking.connect(url.hostname, port, timeout=5)
    try:
        connection.request(
            "POST",
            url.path or "/",
            body=json.dumps(reading),
            headers={"Content-Type": "application/json"},
        )
        return str(connection.getresponse().status)
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report-url", required=True)
    parser.add_argument("--interval", type=float, default=2.0)
    options = parser.parse_args()
    url = urllib.parse.urlsplit(options.report_url)

    heater = gpio.open_output("$HEATER", gpio.LOW)
    led = gpio.open_output("$STATUS_LED", gpio.HIGH)
    state = load_state()
    heating = False
    while True:
        celsius = read_celsius()
        if not SENSOR_RANGE[0] <= celsius <= SENSOR_RANGE[1]:
            raise RuntimeError(f"sensor reads {celsius} °C, outside its range: sensor fault")
        if celsius < state["setpoint"] - HYSTERESIS:
            heating = True
        elif celsius > state["setpoint"] + HYSTERESIS:
            heating = False
        gpio.set_value(heater, gpio.HIGH if heating else gpio.LOW)
        reading = {"time": time.time(), "celsius": celsius, "heater": heating}
        state["history"].append(reading)
        save_state(state)
        for event in events.poll():
            if event["status"] == "Pending" and heating:
                print(f"heating: update deferred until {events.defer_update(15)}", flush=True)
        try:
            outcome = report(url, {**reading, "setpoint": state["setpoint"]})
        except OSError as exc:
            outcome = f"failed ({exc})"
        print(f"{celsius:.1f} °C, heater {'on' if heating else 'off'}, report {outcome}")
        gpio.set_value(led, gpio.get_value(led) ^ 1)
        time.sleep(options.interval)


if __name__ == "__main__":
    main()
