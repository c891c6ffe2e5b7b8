"""The pilot who flies an MSP board's quad to a point on the sticks (hil.sim.position_pilot)."""

from __future__ import annotations

import math

import pytest

from hil.sim.position_pilot import FULL_STICK_DEG, MAX_TILT_DEG, PositionPilot


class _Vehicle:
    def __init__(self, pos, vel, yaw):
        self.pos, self.vel, self._yaw = pos, vel, yaw

    def euler(self):
        return 0.0, 0.0, self._yaw


class _Loop:
    def __init__(self, pos=(0.0, 0.0, -5.0), vel=(0.0, 0.0, 0.0), yaw=0.0):
        self.vehicle = _Vehicle(pos, vel, yaw)
        self.sticks = []

    def pose(self):
        v = self.vehicle
        return (-v.pos[2], v.pos[0], v.pos[1], math.hypot(v.vel[0], v.vel[1]), 0.0, 0.0)

    def set_sticks(self, roll=1500, pitch=1500, throttle=None, yaw=1500):
        self.sticks.append((roll, pitch))


def test_facing_north_it_pitches_forward_to_go_north_and_rolls_right_to_go_east():
    roll, pitch = PositionPilot(_Loop(), 40.0, 0.0).sticks()
    assert pitch == 1500 + round(500 * MAX_TILT_DEG / FULL_STICK_DEG) and roll == 1500
    roll, pitch = PositionPilot(_Loop(), 0.0, 40.0).sticks()
    assert roll > 1500 and pitch == 1500


def test_facing_east_it_rolls_left_to_go_north():
    roll, pitch = PositionPilot(_Loop(yaw=math.pi / 2), 40.0, 0.0).sticks()
    assert roll < 1500 and pitch == pytest.approx(1500, abs=1)


def test_at_the_point_and_still_the_sticks_are_centred_and_moving_it_brakes():
    assert PositionPilot(_Loop(pos=(40.0, 0.0, -5.0)), 40.0, 0.0).sticks() == (1500, 1500)
    roll, pitch = PositionPilot(_Loop(pos=(40.0, 0.0, -5.0), vel=(5.0, 0.0, 0.0)), 40.0, 0.0).sticks()
    assert pitch < 1500  # nose up against the overshoot


def test_stop_centres_the_sticks():
    loop = _Loop()
    pilot = PositionPilot(loop, 40.0, 0.0).start()
    pilot.stop()
    assert loop.sticks[-1] == (1500, 1500)
